import * as tf from '@tensorflow/tfjs-core';

// tfjs prints an "install tfjs-node" banner on the first tensor in Node; tfjs-node cannot be
// installed where dynn runs. PROD silences tfjs warnings. (IS_TEST would too, but it also turns on
// tfjs's kernel leak check, which misfires on wasm for gradients saved by custom-gradient ops.)
tf.env().set('PROD', true);
