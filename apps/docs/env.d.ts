// Single-file Vue components as TypeScript sees them when it checks the site's config and theme
// (`npm run typecheck`): tsc cannot read `.vue` files, so it takes them as components.
declare module '*.vue' {
  import type { DefineComponent } from 'vue';

  const component: DefineComponent;
  export default component;
}
