/**
 * A Dockerfile read the way the builder reads it, for the deploy tests (no Docker here to build
 * the images): instructions with their line continuations joined and comments dropped, the
 * global ARG defaults substituted into FROM, and the stages named by `AS`.
 */
import { readFileSync } from 'node:fs';

export interface Instruction {
  op: string;
  args: string;
}

export interface Stage {
  /** The image, ARG defaults substituted: "nvidia/cuda:12.5.1-cudnn-runtime-ubuntu22.04". */
  from: string;
  name?: string;
  instructions: Instruction[];
}

export interface Dockerfile {
  args: Record<string, string>;
  stages: Stage[];
}

export function instructionsOf(text: string): Instruction[] {
  const out: Instruction[] = [];
  let pending = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    // Comments are whole lines; inside a continued instruction they are skipped too.
    if (line.startsWith('#') || (line === '' && pending === '')) continue;
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1).trim()} `;
      continue;
    }
    const full = (pending + line).trim();
    pending = '';
    if (full === '') continue;
    const [, op, args] = full.match(/^(\S+)\s*(.*)$/s)!;
    out.push({ op: op.toUpperCase(), args });
  }
  return out;
}

/** ${NAME} or $NAME with the value from `args`; unknown names stay as they are. */
const substitute = (text: string, args: Record<string, string>) =>
  text.replace(/\$\{(\w+)\}|\$(\w+)/g, (m, a, b) => args[a ?? b] ?? m);

export function parseDockerfile(path: string): Dockerfile {
  const args: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const ins of instructionsOf(readFileSync(path, 'utf8'))) {
    if (ins.op === 'FROM') {
      const [image, as, name] = ins.args.split(/\s+/);
      stages.push({
        from: substitute(image, args),
        name: as?.toUpperCase() === 'AS' ? name : undefined,
        instructions: [],
      });
    } else if (ins.op === 'ARG' && stages.length === 0) {
      // Only ARGs before the first FROM are in scope for FROM lines.
      const [name, value = ''] = ins.args.split('=');
      args[name] = value;
    } else {
      stages.at(-1)?.instructions.push(ins);
    }
  }
  return { args, stages };
}

/** `ENV A=1 B=2` (the key=value form), every ENV of a stage merged. */
export function envOf(stage: Stage): Record<string, string> {
  const env: Record<string, string> = {};
  for (const ins of stage.instructions.filter((i) => i.op === 'ENV')) {
    for (const [, key, value] of ins.args.matchAll(/(\w+)=("[^"]*"|\S+)/g))
      env[key] = value.replace(/^"|"$/g, '');
  }
  return env;
}

/** The exec form (`["node", "…"]`) of ENTRYPOINT or CMD, as the argument list it is. */
export function execForm(stage: Stage, op: 'ENTRYPOINT' | 'CMD'): string[] | undefined {
  const ins = stage.instructions.filter((i) => i.op === op).at(-1);
  return ins ? (JSON.parse(ins.args) as string[]) : undefined;
}
