import type { Theme } from 'vitepress';
import DefaultTheme from 'vitepress/theme';
import LiveCoreExample from '../../live/LiveCoreExample.vue';
import LiveEarlyExitExample from '../../live/LiveEarlyExitExample.vue';
import LiveMoeRouterExample from '../../live/LiveMoeRouterExample.vue';
import LiveSortedNetExample from '../../live/LiveSortedNetExample.vue';
import LiveSparseAttentionExample from '../../live/LiveSparseAttentionExample.vue';
import './custom.css';

// The default theme, plus the live examples as global components so any page of docs/ can use
// them by name (`<LiveCoreExample />`) without a script block.
export default {
  extends: DefaultTheme,
  enhanceApp({ app }) {
    app.component('LiveCoreExample', LiveCoreExample);
    app.component('LiveEarlyExitExample', LiveEarlyExitExample);
    app.component('LiveSortedNetExample', LiveSortedNetExample);
    app.component('LiveMoeRouterExample', LiveMoeRouterExample);
    app.component('LiveSparseAttentionExample', LiveSparseAttentionExample);
  },
} satisfies Theme;
