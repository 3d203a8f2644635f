import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { RouteEntity } from '@gatehouse/core/entities.ts';
import { normalizePath } from '@gatehouse/core/uri.ts';
import { Router, upstreamPathV0, type MatchRequest } from '../src/router.ts';
import { route } from './helpers.ts';

function build(routes: RouteEntity[]) {
  return new Router(routes.map((r) => ({ route: r, payload: r.name })));
}

function rq(path: string, extra: Partial<MatchRequest> = {}): MatchRequest {
  return { method: 'GET', host: 'example.test', port: 80, path, headers: {}, https: false, sni: null, ...extra };
}

const hit = (router: Router<string | null>, path: string, extra: Partial<MatchRequest> = {}) => router.match(rq(path, extra))?.payload ?? null;

describe('router: Kong matching rules', () => {
  test('prefix paths: longest prefix wins, and prefixes are character prefixes like Kong', () => {
    const r = build([route({ name: 'root', paths: ['/'] }), route({ name: 'api', paths: ['/api'] }), route({ name: 'v1', paths: ['/api/v1'] })]);
    assert.equal(hit(r, '/'), 'root');
    assert.equal(hit(r, '/other'), 'root');
    assert.equal(hit(r, '/api'), 'api');
    assert.equal(hit(r, '/apis'), 'api');
    assert.equal(hit(r, '/api/v1/users'), 'v1');
    assert.equal(hit(r, '/api/v2'), 'api');
  });

  test('a route with several paths: each path has its own length (no borrowing from a longer unrelated path)', () => {
    const r = build([route({ name: 'multi', paths: ['/a', '/very/long/unrelated/path'] }), route({ name: 'ab', paths: ['/a/b'] })]);
    assert.equal(hit(r, '/a/b/c'), 'ab');
    assert.equal(hit(r, '/a/x'), 'multi');
    assert.equal(hit(r, '/very/long/unrelated/path/x'), 'multi');
  });

  test('no route matches: null', () => {
    const r = build([route({ name: 'api', paths: ['/api'] })]);
    assert.equal(r.match(rq('/other')), null);
  });

  test('hosts: exact, leftmost and rightmost wildcards, ports, case-insensitive, plain hosts before wildcards', () => {
    const r = build([
      route({ name: 'exact', hosts: ['api.example.test'] }),
      route({ name: 'left', hosts: ['*.example.test'] }),
      route({ name: 'right', hosts: ['shop.*'] }),
      route({ name: 'port', hosts: ['ported.test:8080'] }),
    ]);
    assert.equal(hit(r, '/', { host: 'api.example.test' }), 'exact');
    assert.equal(hit(r, '/', { host: 'x.example.test' }), 'left');
    assert.equal(hit(r, '/', { host: 'a.b.example.test' }), 'left');
    assert.equal(hit(r, '/', { host: 'example.test' }), null);
    assert.equal(hit(r, '/', { host: 'shop.example.org' }), 'right');
    assert.equal(hit(r, '/', { host: 'ported.test', port: 8080 }), 'port');
    assert.equal(hit(r, '/', { host: 'ported.test', port: 80 }), null);
  });

  test('more matching fields win over fewer (methods + path beats path alone, whatever the path length)', () => {
    const r = build([route({ name: 'long', paths: ['/api/long/path'] }), route({ name: 'get', paths: ['/api'], methods: ['GET'] })]);
    assert.equal(hit(r, '/api/long/path'), 'get');
    assert.equal(hit(r, '/api/long/path', { method: 'POST' }), 'long');
    assert.equal(hit(r, '/api', { method: 'POST' }), null);
  });

  test('headers: all listed headers must match one of their values (case-insensitive), ~* values are regexes; more headers win', () => {
    const r = build([
      route({ name: 'one', paths: ['/'], headers: { 'x-version': ['v1', 'V2'] } }),
      route({ name: 'two', paths: ['/'], headers: { 'x-version': ['v1'], 'x-tier': ['gold'] } }),
      route({ name: 'regex', paths: ['/'], headers: { 'x-build': ['~*^rc-\\d+$'] } }),
    ]);
    assert.equal(hit(r, '/', { headers: { 'x-version': 'V1' } }), 'one');
    assert.equal(hit(r, '/', { headers: { 'x-version': 'v2' } }), 'one');
    assert.equal(hit(r, '/', { headers: { 'x-version': 'v1', 'x-tier': 'GOLD' } }), 'two');
    assert.equal(hit(r, '/', { headers: { 'x-build': 'RC-12' } }), 'regex');
    assert.equal(hit(r, '/', { headers: { 'x-build': 'rc-x' } }), null);
  });

  test('regex paths: anchored at the start, before prefix paths of the same weight, ordered by regex_priority', () => {
    const r = build([
      route({ name: 'prefix', paths: ['/users/admin'] }),
      route({ name: 'low', paths: ['~/users/\\w+$'], regex_priority: 0 }),
      route({ name: 'high', paths: ['~/users/(?<id>\\d+)$'], regex_priority: 10 }),
    ]);
    assert.equal(hit(r, '/users/42'), 'high');
    assert.equal(hit(r, '/users/admin'), 'low');
    assert.equal(hit(r, '/users/admin/x'), 'prefix');
    assert.equal(hit(r, '/x/users/42'), null);
    const m = r.match(rq('/users/42'))!;
    assert.deepEqual(m.captures, { id: '42' });
    assert.equal(m.matched, '/users/42');
  });

  test('equal priority: the oldest route wins', () => {
    const a = route({ name: 'older', paths: ['/same'], created_at: 100 });
    const b = route({ name: 'newer', paths: ['/same'], created_at: 200 });
    assert.equal(hit(build([b, a]), '/same'), 'older');
  });

  test('SNIs count on https only', () => {
    const r = build([route({ name: 'sni', snis: ['secure.test'], paths: ['/'] }), route({ name: 'plain', paths: ['/'] })]);
    assert.equal(hit(r, '/', { https: true, sni: 'secure.test' }), 'sni');
    assert.equal(hit(r, '/', { https: true, sni: 'other.test' }), 'plain');
    assert.equal(hit(r, '/', { https: false }), 'sni');
  });

  test('a host-specific route wins over a host-less one with the same path', () => {
    const r = build([route({ name: 'any', paths: ['/x'] }), route({ name: 'host', paths: ['/x'], hosts: ['example.test'] })]);
    assert.equal(hit(r, '/x'), 'host');
    assert.equal(hit(r, '/x', { host: 'other.test' }), 'any');
  });

  test('matching cost stays flat from 100 to 10,000 routes', () => {
    const make = (n: number) => {
      const routes: RouteEntity[] = [];
      for (let i = 0; i < n; i++) {
        routes.push(route({ name: `r${i}`, paths: [`/svc${i}/api`], hosts: [i % 2 ? `h${i}.example.test` : 'shared.example.test'], methods: i % 3 ? ['GET'] : null }));
      }
      routes.push(route({ name: 'regex', paths: ['~/items/\\d+$'] }));
      return build(routes);
    };
    const time = (router: Router<string | null>, paths: MatchRequest[]) => {
      let found = 0;
      const t0 = process.hrtime.bigint();
      for (let k = 0; k < 20; k++) for (const p of paths) if (router.match(p)) found++;
      return { ns: Number(process.hrtime.bigint() - t0), found };
    };
    // The same number of distinct routes is hit in both tables (spread over the whole table),
    // so the comparison measures the algorithm, not how much of the table fits in the CPU cache.
    const requests = (n: number) =>
      Array.from({ length: 2000 }, (_, i) => {
        const k = ((i * 7919) % 100) * (n / 100);
        return rq(`/svc${k}/api/resource`, { host: k % 2 ? `h${k}.example.test` : 'shared.example.test' });
      });
    const small = make(100);
    const large = make(10_000);
    const rs = requests(100);
    const rl = requests(10_000);
    let bestSmall = Infinity;
    let bestLarge = Infinity;
    for (let round = 0; round < 5; round++) {
      const a = time(small, rs);
      const b = time(large, rl);
      assert.equal(a.found, 40_000);
      assert.equal(b.found, 40_000);
      bestSmall = Math.min(bestSmall, a.ns);
      bestLarge = Math.min(bestLarge, b.ns);
    }
    const ratio = bestLarge / bestSmall;
    assert.ok(ratio < 4, `10,000 routes took ${ratio.toFixed(2)}x the time of 100 routes`);
    assert.equal(hit(large, '/items/12'), 'regex');
  });
});

describe('path normalisation (Kong: kong.tools.uri.normalize)', () => {
  test('unreserved triplets decoded, others upper-cased, dot segments removed, slashes merged', () => {
    const cases: [string, string][] = [
      ['/', '/'],
      ['/plain/path.json', '/plain/path.json'],
      ['/a/b/', '/a/b/'],
      ['/a//b///c', '/a/b/c'],
      ['/a/./b/../c', '/a/c'],
      ['/a/b/..', '/a/'],
      ['/a/..', '/'],
      ['/..', '/'],
      ['/../../x', '/x'],
      ['/.', '/'],
      ['/.well-known/x', '/.well-known/x'],
      ['/a/..b/c.', '/a/..b/c.'],
      ['/%7euser/%41%2d%5F', '/~user/A-_'],
      ['/%2E%2e/%2e/admin', '/admin'],
      ['/a%2fb%3a%3F', '/a%2Fb%3A%3F'],
      ['/%e2%82%ac', '/%E2%82%AC'],
      ['/bad%zz%4', '/bad%zz%4'],
    ];
    for (const [input, expected] of cases) assert.equal(normalizePath(input), expected, input);
  });

  test('prefix paths stored unnormalised (written before the admin API refused them) match normalised requests', () => {
    const r = build([route({ name: 'tilde', paths: ['/%7Euser'] }), route({ name: 'cafe', paths: ['/caf%c3%a9'] })]);
    assert.equal(hit(r, normalizePath('/%7Euser/x')), 'tilde');
    assert.equal(hit(r, normalizePath('/~user/x')), 'tilde');
    assert.equal(hit(r, normalizePath('/caf%c3%a9')), 'cafe');
  });
});

describe('upstream path (path_handling v0)', () => {
  // [service.path, route path, request path, strip_path, expected], from Kong's v0 rules.
  const cases: [string | null, string, string, boolean, string][] = [
    [null, '/my-route', '/my-route', true, '/'],
    [null, '/my-route', '/my-route/hello', true, '/hello'],
    [null, '/my-route', '/my-route/hello', false, '/my-route/hello'],
    ['/', '/my-route', '/my-route/', true, '/'],
    ['/svc', '/api', '/api/foo', true, '/svc/foo'],
    ['/svc', '/api', '/api', true, '/svc'],
    ['/svc', '/api', '/api/', true, '/svc/'],
    ['/svc', '/api', '/apifoo', true, '/svc/foo'],
    ['/svc/', '/api', '/api/foo', true, '/svc/foo'],
    ['/svc/', '/api', '/api', true, '/svc'],
    ['/svc/', '/api', '/api/', true, '/svc/'],
    ['/svc/', '/api', '/apifoo', true, '/svc/foo'],
    ['/svc', '/api', '/api/foo', false, '/svc/api/foo'],
    ['/svc/', '/api', '/api/foo', false, '/svc/api/foo'],
    ['/svc', '/', '/', false, '/svc'],
  ];
  for (const [base, prefix, path, strip, expected] of cases) {
    test(`service ${base} route ${prefix} request ${path} strip=${strip} → ${expected}`, () => {
      assert.equal(upstreamPathV0(base, path, strip ? prefix : null), expected);
    });
  }
});
