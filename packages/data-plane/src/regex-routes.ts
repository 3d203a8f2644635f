// Routes stored before the admin API checked regexes for super-linear backtracking may still
// have such a regex (`~/(a+)+$`): one request could then block this process for seconds. A
// route with one proven to backtrack is left out of the config, with a warning, before the
// snapshot is applied. The check runs in recheck's helper process (the event loop keeps
// serving), once per distinct regex per process, and never per request.
import type { Logger } from '@gatehouse/core/logger.ts';
import { checkBacktracking, routeRegexes } from '@gatehouse/core/route-regex.ts';
import type { Snapshot } from '@gatehouse/core/snapshot.ts';

export async function withoutBacktrackingRoutes(snapshot: Snapshot, logger: Logger): Promise<Snapshot> {
  const left: string[] = [];
  for (const route of snapshot.routes) {
    for (const { text, regex } of routeRegexes(route)) {
      const verdict = await checkBacktracking(regex);
      if (verdict.safe) continue;
      if (!verdict.proven) {
        logger.warn('route kept: a regex of it could not be shown free of super-linear backtracking; check it through the admin API', {
          version: snapshot.version,
          route: route.id,
          regex: text,
          reason: verdict.reason,
        });
        continue;
      }
      logger.warn('route left out of the config: a regex of it could stall the proxy; change it through the admin API', {
        version: snapshot.version,
        route: route.id,
        route_name: route.name,
        regex: text,
        reason: verdict.reason,
      });
      left.push(route.id);
      break;
    }
  }
  if (left.length === 0) return snapshot;
  return { ...snapshot, routes: snapshot.routes.filter((r) => !left.includes(r.id)) };
}
