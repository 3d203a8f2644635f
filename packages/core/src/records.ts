// Objects built from request input. A plain `{}` inherits `toString`, `constructor`, … and a
// `__proto__` setter, so `obj[key] === undefined`, `key in obj` and `obj[key] = v` go wrong for
// keys with those names; objects without a prototype hold any key as an ordinary own key.

/** An empty object without a prototype. */
export function emptyRecord<T = unknown>(): Record<string, T> {
  return Object.create(null);
}

/** A shallow copy of `source`'s own enumerable keys into an object without a prototype. */
export function toRecord<T = unknown>(source: Record<string, T>): Record<string, T> {
  return Object.assign(emptyRecord<T>(), source);
}

/**
 * The same JSON value with every object copied into one without a prototype. Iterative: a
 * body may nest deeper than the call stack allows.
 */
export function withoutPrototypes(root: unknown): unknown {
  const copy = (v: unknown) => (Array.isArray(v) ? [...v] : toRecord(v as Record<string, unknown>));
  if (root === null || typeof root !== 'object') return root;
  const top = copy(root);
  const pending: Record<string, unknown>[] = [top as Record<string, unknown>];
  for (let node = pending.pop(); node; node = pending.pop()) {
    for (const key of Object.keys(node)) {
      const value = node[key];
      if (value === null || typeof value !== 'object') continue;
      const copied = copy(value);
      node[key] = copied;
      pending.push(copied as Record<string, unknown>);
    }
  }
  return top;
}
