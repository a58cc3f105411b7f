import * as tf from '@tensorflow/tfjs-core';

// tfjs prints a "install tfjs-node" banner on the first tensor in Node; tfjs-node cannot be
// installed here, and IS_TEST is tfjs's own switch for silencing it in test runs.
tf.env().set('IS_TEST', true);
