import { segmentSumOp } from './segment-sum.js';
import { describeSegmentOp } from './segment-test-cases.js';

describeSegmentOp('sum', segmentSumOp, 'SegmentSum');
