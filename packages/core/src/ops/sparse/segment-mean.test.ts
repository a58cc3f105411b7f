import { segmentMeanOp } from './segment-mean.js';
import { describeSegmentOp } from './segment-test-cases.js';

describeSegmentOp('mean', segmentMeanOp, 'SegmentMean');
