// How the oauth2 endpoints read parameters: keys named after Object.prototype members are
// ordinary parameters, in form, multipart and JSON bodies alike.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseMultipart, parseUrlEncoded } from '../src/oauth2/params.ts';

test('a form with __proto__, constructor and toString keys: own parameters, the object keeps no prototype', () => {
  const params = parseUrlEncoded('__proto__=a&__proto__=b&constructor=c&toString=d&grant_type=client_credentials');
  assert.equal(Object.getPrototypeOf(params), null);
  assert.deepEqual(Object.keys(params).sort(), ['__proto__', 'constructor', 'grant_type', 'toString']);
  assert.deepEqual(params.__proto__, ['a', 'b']);
  assert.equal(params.constructor, 'c');
  assert.equal(params.toString, 'd');
  // A single __proto__ is a string, as any first value is (it used to pair with Object.prototype).
  assert.equal(parseUrlEncoded('__proto__=x').__proto__, 'x');
});

test('multipart fields named after prototype members are own parameters', () => {
  const body = Buffer.from('--b\r\nContent-Disposition: form-data; name="__proto__"\r\n\r\nx\r\n--b\r\nContent-Disposition: form-data; name="hasOwnProperty"\r\n\r\ny\r\n--b--\r\n');
  const params = parseMultipart(body, 'multipart/form-data; boundary=b');
  assert.equal(Object.getPrototypeOf(params), null);
  assert.equal(params.__proto__, 'x');
  assert.equal(params.hasOwnProperty, 'y');
});
