// The oauth2 plugin: an OAuth 2.0 authorization server and resource-server check on the data
// planes (Kong's oauth2, plus RFC 7009/7662/8414 and RFC 9700), with its admin entities.
import { randomAlnum } from '@gatehouse/core/crypto.ts';
import type { PluginDefinition } from '@gatehouse/core/plugin-sdk.ts';
import { hashProvisionKey } from './provision-key.ts';
import { oauth2ConfigSchema, type Oauth2Config } from './schema.ts';

export const oauth2Plugin: PluginDefinition<Oauth2Config> = {
  name: 'oauth2',
  version: '0.1.0',
  priority: 1400,
  configSchema: oauth2ConfigSchema,
  protocols: ['grpc', 'grpcs', 'http', 'https'],
  checkEntity(plugin) {
    if (plugin.consumer) return { consumer: 'value must be null' };
    return null;
  },
  completeConfig(config, previous) {
    return { ...config, provision_key: config.provision_key ?? previous?.provision_key ?? randomAlnum(32) };
  },
  snapshotConfig(config) {
    return config.provision_key === null ? config : { ...config, provision_key: hashProvisionKey(config.provision_key) };
  },
  dataPlane: () => import('./handler.ts'),
  controlPlane: () => import('./control-plane.ts'),
};
