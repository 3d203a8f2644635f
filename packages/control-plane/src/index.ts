// @gatehouse/control-plane: the admin API and the snapshot publisher.
export { startControlPlane, checkAdminExposure, type ControlPlane, type StartControlPlaneOptions, type AdminAddress } from './server.ts';
export { createAdminApp, createEngine, engineOf, pluginSchemaDocument, GATEHOUSE_VERSION, type AdminAppOptions } from './app.ts';
export { EntityEngine, bumpVersion, type ParentScope } from './engine.ts';
export { SnapshotPublisher, parsePointer, type PublisherOptions } from './publisher.ts';
export { servicesEntity, routesEntity, consumersEntity, pluginsEntity, expandServiceUrl } from './core-entities.ts';
export { isDatabaseUnavailable, mapError } from './errors.ts';
