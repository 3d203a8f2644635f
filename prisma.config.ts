// Prisma CLI configuration. Only `prisma generate` is used: migrations are plain SQL applied by
// `gatehouse migrations up` (the schema engine binary cannot be fetched on every machine).
import { defineConfig } from 'prisma/config';

export default defineConfig({ schema: 'prisma/schema' });
