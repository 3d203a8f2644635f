-- Gatehouse initial schema: core entities, config version, oauth2 plugin tables.
-- Must agree with prisma/schema/*.prisma (test: packages/core/test/schema-agreement.test.ts).

CREATE TABLE "services" (
    "id" UUID NOT NULL,
    "name" TEXT,
    "protocol" TEXT NOT NULL DEFAULT 'http',
    "host" TEXT NOT NULL,
    "port" INTEGER NOT NULL DEFAULT 80,
    "path" TEXT,
    "retries" INTEGER NOT NULL DEFAULT 5,
    "connect_timeout" INTEGER NOT NULL DEFAULT 60000,
    "write_timeout" INTEGER NOT NULL DEFAULT 60000,
    "read_timeout" INTEGER NOT NULL DEFAULT 60000,
    "tags" TEXT[] NOT NULL DEFAULT ARRAY[]::TEXT[],
    "client_certificate" UUID,
    "tls_verify" BOOLEAN,
    "tls_verify_depth" INTEGER,
    "ca_certificates" UUID[] NOT NULL DEFAULT ARRAY[]::UUID[],
    "enabled" BOOLEAN NOT NULL DEFAULT true,
    "created_at" INTEGER NOT NULL,
    "updated_at" INTEGER NOT NULL,
    CONSTRAINT "services_pkey" PRIMARY KEY ("id")
);
CREATE UNIQUE INDEX "services_name_key" ON "services"("name");

CREATE TABLE "routes" (
    "id" UUID NOT NULL,
    "name" TEXT,
    "protocols" TEXT[] NOT NULL DEFAULT ARRAY['http', 'https']::TEXT[],
    "methods" TEXT[] NOT NULL DEFAULT ARRAY[]::TEXT[],
    "hosts" TEXT[] NOT NULL DEFAULT ARRAY[]::TEXT[],
    "paths" TEXT[] NOT NULL DEFAULT ARRAY[]::TEXT[],
    "headers" JSONB,
    "snis" TEXT[] NOT NULL DEFAULT ARRAY[]::TEXT[],
    "sources" JSONB,
    "destinations" JSONB,
    "https_redirect_status_code" INTEGER NOT NULL DEFAULT 426,
    "regex_priority" INTEGER NOT NULL DEFAULT 0,
    "strip_path" BOOLEAN NOT NULL DEFAULT true,
    "preserve_host" BOOLEAN NOT NULL DEFAULT false,
    "request_buffering" BOOLEAN NOT NULL DEFAULT true,
    "response_buffering" BOOLEAN NOT NULL DEFAULT true,
    "path_handling" TEXT NOT NULL DEFAULT 'v0',
    "tags" TEXT[] NOT NULL DEFAULT ARRAY[]::TEXT[],
    "service_id" UUID,
    "created_at" INTEGER NOT NULL,
    "updated_at" INTEGER NOT NULL,
    CONSTRAINT "routes_pkey" PRIMARY KEY ("id")
);
CREATE UNIQUE INDEX "routes_name_key" ON "routes"("name");
CREATE INDEX "routes_service_id_idx" ON "routes"("service_id");

CREATE TABLE "consumers" (
    "id" UUID NOT NULL,
    "username" TEXT,
    "custom_id" TEXT,
    "tags" TEXT[] NOT NULL DEFAULT ARRAY[]::TEXT[],
    "created_at" INTEGER NOT NULL,
    "updated_at" INTEGER NOT NULL,
    CONSTRAINT "consumers_pkey" PRIMARY KEY ("id")
);
CREATE UNIQUE INDEX "consumers_username_key" ON "consumers"("username");
CREATE UNIQUE INDEX "consumers_custom_id_key" ON "consumers"("custom_id");

CREATE TABLE "plugins" (
    "id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "instance_name" TEXT,
    "cache_key" TEXT NOT NULL,
    "config" JSONB NOT NULL,
    "protocols" TEXT[] NOT NULL DEFAULT ARRAY['grpc', 'grpcs', 'http', 'https']::TEXT[],
    "enabled" BOOLEAN NOT NULL DEFAULT true,
    "tags" TEXT[] NOT NULL DEFAULT ARRAY[]::TEXT[],
    "service_id" UUID,
    "route_id" UUID,
    "consumer_id" UUID,
    "created_at" INTEGER NOT NULL,
    "updated_at" INTEGER NOT NULL,
    CONSTRAINT "plugins_pkey" PRIMARY KEY ("id")
);
CREATE UNIQUE INDEX "plugins_instance_name_key" ON "plugins"("instance_name");
CREATE UNIQUE INDEX "plugins_cache_key_key" ON "plugins"("cache_key");
CREATE INDEX "plugins_service_id_idx" ON "plugins"("service_id");
CREATE INDEX "plugins_route_id_idx" ON "plugins"("route_id");
CREATE INDEX "plugins_consumer_id_idx" ON "plugins"("consumer_id");

CREATE TABLE "config_version" (
    "id" INTEGER NOT NULL DEFAULT 1,
    "version" BIGINT NOT NULL DEFAULT 0,
    "updated_at" INTEGER NOT NULL,
    CONSTRAINT "config_version_pkey" PRIMARY KEY ("id")
);
INSERT INTO "config_version" ("id", "version", "updated_at")
VALUES (1, 0, CAST(EXTRACT(EPOCH FROM now()) AS INTEGER));

CREATE TABLE "oauth2_credentials" (
    "id" UUID NOT NULL,
    "consumer_id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "client_id" TEXT NOT NULL,
    "client_secret" TEXT NOT NULL,
    "hash_secret" BOOLEAN NOT NULL DEFAULT false,
    "redirect_uris" TEXT[] NOT NULL DEFAULT ARRAY[]::TEXT[],
    "client_type" TEXT NOT NULL DEFAULT 'confidential',
    "tags" TEXT[] NOT NULL DEFAULT ARRAY[]::TEXT[],
    "created_at" INTEGER NOT NULL,
    CONSTRAINT "oauth2_credentials_pkey" PRIMARY KEY ("id")
);
CREATE UNIQUE INDEX "oauth2_credentials_client_id_key" ON "oauth2_credentials"("client_id");
CREATE INDEX "oauth2_credentials_consumer_id_idx" ON "oauth2_credentials"("consumer_id");

CREATE TABLE "oauth2_authorization_codes" (
    "id" UUID NOT NULL,
    "code_hash" TEXT NOT NULL,
    "service_id" UUID,
    "credential_id" UUID NOT NULL,
    "plugin_id" UUID,
    "authenticated_userid" TEXT,
    "scope" TEXT,
    "redirect_uri" TEXT,
    "challenge" TEXT,
    "challenge_method" TEXT,
    "grant_id" UUID NOT NULL,
    "created_at" INTEGER NOT NULL,
    "expires_at" INTEGER NOT NULL,
    CONSTRAINT "oauth2_authorization_codes_pkey" PRIMARY KEY ("id")
);
CREATE UNIQUE INDEX "oauth2_authorization_codes_code_hash_key" ON "oauth2_authorization_codes"("code_hash");
CREATE INDEX "oauth2_authorization_codes_credential_id_idx" ON "oauth2_authorization_codes"("credential_id");

CREATE TABLE "oauth2_tokens" (
    "id" UUID NOT NULL,
    "credential_id" UUID NOT NULL,
    "service_id" UUID,
    "plugin_id" UUID,
    "token_type" TEXT NOT NULL DEFAULT 'bearer',
    "expires_in" INTEGER NOT NULL,
    "access_token_hash" TEXT NOT NULL,
    "refresh_token_hash" TEXT,
    "authenticated_userid" TEXT,
    "scope" TEXT,
    "grant_id" UUID NOT NULL,
    "cnf_thumbprint" TEXT,
    "created_at" INTEGER NOT NULL,
    "purge_at" INTEGER,
    CONSTRAINT "oauth2_tokens_pkey" PRIMARY KEY ("id")
);
CREATE UNIQUE INDEX "oauth2_tokens_access_token_hash_key" ON "oauth2_tokens"("access_token_hash");
CREATE UNIQUE INDEX "oauth2_tokens_refresh_token_hash_key" ON "oauth2_tokens"("refresh_token_hash");
CREATE INDEX "oauth2_tokens_credential_id_idx" ON "oauth2_tokens"("credential_id");
CREATE INDEX "oauth2_tokens_grant_id_idx" ON "oauth2_tokens"("grant_id");
CREATE INDEX "oauth2_tokens_purge_at_idx" ON "oauth2_tokens"("purge_at");

ALTER TABLE "routes" ADD CONSTRAINT "routes_service_id_fkey" FOREIGN KEY ("service_id") REFERENCES "services"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
ALTER TABLE "plugins" ADD CONSTRAINT "plugins_service_id_fkey" FOREIGN KEY ("service_id") REFERENCES "services"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "plugins" ADD CONSTRAINT "plugins_route_id_fkey" FOREIGN KEY ("route_id") REFERENCES "routes"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "plugins" ADD CONSTRAINT "plugins_consumer_id_fkey" FOREIGN KEY ("consumer_id") REFERENCES "consumers"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "oauth2_credentials" ADD CONSTRAINT "oauth2_credentials_consumer_id_fkey" FOREIGN KEY ("consumer_id") REFERENCES "consumers"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "oauth2_authorization_codes" ADD CONSTRAINT "oauth2_authorization_codes_service_id_fkey" FOREIGN KEY ("service_id") REFERENCES "services"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "oauth2_authorization_codes" ADD CONSTRAINT "oauth2_authorization_codes_credential_id_fkey" FOREIGN KEY ("credential_id") REFERENCES "oauth2_credentials"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "oauth2_tokens" ADD CONSTRAINT "oauth2_tokens_credential_id_fkey" FOREIGN KEY ("credential_id") REFERENCES "oauth2_credentials"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "oauth2_tokens" ADD CONSTRAINT "oauth2_tokens_service_id_fkey" FOREIGN KEY ("service_id") REFERENCES "services"("id") ON DELETE CASCADE ON UPDATE CASCADE;
