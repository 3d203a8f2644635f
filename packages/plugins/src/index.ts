// The plugin registry: every plugin Gatehouse ships, by name. Each lives in its own folder
// holding its config schema, data-plane handler, admin entities and control-plane jobs.
import type { PluginDefinition } from '@gatehouse/core';
import { oauth2Plugin } from './oauth2/index.ts';

export const plugins: ReadonlyMap<string, PluginDefinition> = new Map(
  [oauth2Plugin].map((p) => [p.name, p as PluginDefinition]),
);

export function getPlugin(name: string): PluginDefinition | undefined {
  return plugins.get(name);
}

/** Highest priority first, as Kong runs them. */
export const pluginNamesByPriority: readonly string[] = [...plugins.values()]
  .sort((a, b) => b.priority - a.priority)
  .map((p) => p.name);
