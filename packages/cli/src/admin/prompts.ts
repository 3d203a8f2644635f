// Asking for the fields a create is missing, only when someone is at a terminal (stdin and
// stdout both TTYs); @inquirer/input is loaded only then. The answers become form fields, as
// `-p` would have given them.
import type { Requirement } from './entities.ts';

export function canPrompt(): boolean {
  return Boolean(process.stdin.isTTY && process.stdout.isTTY);
}

export async function ask(missing: Requirement[]): Promise<[string, string][]> {
  const { default: input } = await import('@inquirer/input');
  const fields: [string, string][] = [];
  for (const r of missing) {
    let answer: string;
    try {
      answer = (await input({ message: r.question, required: true })).trim();
    } catch (err) {
      // Ctrl-C or Ctrl-D at the prompt.
      if ((err as Error)?.name === 'ExitPromptError') throw new Error('cancelled');
      throw err;
    }
    if (r.list) for (const v of answer.split(',').map((s) => s.trim()).filter(Boolean)) fields.push([`${r.ask}[]`, v]);
    else fields.push([r.ask, answer]);
  }
  return fields;
}
