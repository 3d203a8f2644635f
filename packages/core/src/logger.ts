// Structured JSON logs through winston. Secrets never reach a log line: fields whose names
// suggest a secret are masked before formatting, whatever the caller passes.
import winston from 'winston';

const SECRET_FIELD = /(token|secret|password|authorization|provision_key|code_verifier|^code$|cookie)/i;

const redact = winston.format((info) => {
  for (const key of Object.keys(info)) {
    if (SECRET_FIELD.test(key) && typeof info[key] === 'string') info[key] = '[redacted]';
  }
  return info;
});

export type Logger = winston.Logger;

export function createLogger(options: { level?: string; role: string; silent?: boolean }): Logger {
  return winston.createLogger({
    level: options.level ?? process.env.GATEHOUSE_LOG_LEVEL ?? 'info',
    silent: options.silent,
    defaultMeta: { role: options.role, pid: process.pid },
    format: winston.format.combine(redact(), winston.format.timestamp(), winston.format.json()),
    transports: [new winston.transports.Console({ stderrLevels: ['error', 'warn'] })],
  });
}

/**
 * Logs a stray promise rejection instead of dying of it (Node's default): a gateway process
 * keeps serving everything else, as an nginx worker outlives one request's Lua error.
 */
export function surviveUnhandledRejections(logger: Logger): void {
  process.on('unhandledRejection', (reason) => {
    logger.error('unhandled rejection', { error: String((reason as Error)?.message ?? reason).split('\n')[0], stack: (reason as Error)?.stack });
  });
}

/**
 * The last line of defence, not a fix: an exception nothing caught (a bug, whatever a client
 * sent) is logged as one and the process keeps serving. Ending the process would end every
 * other request and connection it holds, and a client able to trigger it could repeat it.
 */
export function surviveUncaughtExceptions(logger: Logger): void {
  process.on('uncaughtException', (err) => {
    logger.error('bug: uncaught exception, still serving', { error: String(err?.message ?? err).split('\n')[0], stack: err?.stack });
  });
}
