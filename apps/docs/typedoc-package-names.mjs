// A TypeDoc plugin: names each module of the API reference after its npm package
// (`@dynn/core`) instead of its folder (`core/src`), so pages and the sidebar read as users import.
import { Converter, ReflectionKind } from 'typedoc';

/** @param {import('typedoc').Application} app */
export function load(app) {
  app.converter.on(Converter.EVENT_RESOLVE_BEGIN, (context) => {
    const project = context.project;
    for (const module of project.getChildrenByKind(ReflectionKind.Module)) {
      const packageName = project.getSymbolIdFromReflection(module)?.packageName;
      if (packageName?.startsWith('@dynn/')) module.name = packageName;
    }
  });
}
