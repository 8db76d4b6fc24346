/**
 * The checks test/docs/links.test.ts runs over the Markdown docs: relative links that resolve (file, and
 * heading for a `#anchor`), and `gradfleet …` command lines in fenced shell blocks whose subcommand and flags
 * exist in the commander program. Nothing here runs a command.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import type { Command, Option } from 'commander';
import { anchorOf } from '../../scripts/cli-docs.js';

interface Problem {
  /** `file:line`, relative to the repository root. */
  where: string;
  what: string;
}

export interface CheckReport {
  problems: Problem[];
  /** Relative links checked (anchors included). */
  links: number;
  /** Links with a `#anchor` whose heading was checked. */
  anchors: number;
  /** gradfleet command lines checked. */
  commands: number;
}

/** README.md, SECURITY.md and every .md under docs/. */
export function docFiles(root: string): string[] {
  const found = ['README.md', 'SECURITY.md'].map((name) => join(root, name));
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (name.endsWith('.md')) found.push(path);
    }
  };
  walk(join(root, 'docs'));
  return found;
}

interface Block {
  lang: string;
  /** 1-based line number of each line of the block's content. */
  lines: { n: number; text: string }[];
}

/** A Markdown text split into prose lines (outside fences) and fenced blocks. */
function split(text: string): { prose: { n: number; text: string }[]; blocks: Block[] } {
  const prose: { n: number; text: string }[] = [];
  const blocks: Block[] = [];
  let open: (Block & { fence: string }) | undefined;
  text.split('\n').forEach((line, i) => {
    const fence = /^\s*(`{3,}|~{3,})\s*([\w-]*)/.exec(line);
    if (open) {
      if (fence?.[1].startsWith(open.fence)) {
        blocks.push(open);
        open = undefined;
      } else open.lines.push({ n: i + 1, text: line });
    } else if (fence) open = { fence: fence[1], lang: fence[2].toLowerCase(), lines: [] };
    else prose.push({ n: i + 1, text: line });
  });
  if (open) blocks.push(open);
  return { prose, blocks };
}

/** The GitHub anchors of a Markdown text's headings (duplicates get -1, -2, …). */
function anchorsOf(text: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const { text: line } of split(text).prose) {
    const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!heading) continue;
    const base = anchorOf(heading[1]);
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    anchors.add(count === 0 ? base : `${base}-${count}`);
  }
  return anchors;
}

/** Inline code spans replaced by a word, so that their brackets and backticks are not read as links. */
const withoutCode = (line: string) => line.replace(/(`+)(?:(?!\1).)+?\1/g, 'code');

const LINK = /!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g;
const REFERENCE = /^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)/;

/** Checks every relative link of `files` (absolute paths under `root`). */
export function checkLinks(root: string, files: string[], report: CheckReport): void {
  const anchorCache = new Map<string, Set<string>>();
  const anchorsIn = (path: string) => {
    const cached = anchorCache.get(path);
    if (cached) return cached;
    const anchors = anchorsOf(readFileSync(path, 'utf8'));
    anchorCache.set(path, anchors);
    return anchors;
  };
  for (const file of files) {
    for (const { n, text } of split(readFileSync(file, 'utf8')).prose) {
      const line = withoutCode(text);
      const targets = [...line.matchAll(LINK)].map((m) => m[1]);
      const reference = REFERENCE.exec(line);
      if (reference) targets.push(reference[1]);
      for (const target of targets) {
        if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // http:, https:, mailto:
        report.links++;
        const where = `${relative(root, file)}:${n}`;
        const hash = target.indexOf('#');
        const pathPart = decodeURIComponent(hash < 0 ? target : target.slice(0, hash));
        const anchor = hash < 0 ? undefined : decodeURIComponent(target.slice(hash + 1));
        const path = pathPart === '' ? file : resolve(dirname(file), pathPart);
        if (!existsSync(path)) {
          report.problems.push({ where, what: `link to a missing file: ${target}` });
          continue;
        }
        if (anchor === undefined) continue;
        if (!path.endsWith('.md')) {
          report.problems.push({ where, what: `#anchor on a file that is not Markdown: ${target}` });
          continue;
        }
        report.anchors++;
        if (!anchorsIn(path).has(anchor)) {
          report.problems.push({ where, what: `no heading for #${anchor} in ${relative(root, path)}` });
        }
      }
    }
  }
}

const SHELL_LANGS = new Set(['', 'bash', 'sh', 'shell', 'console', 'zsh']);

/** Logical shell lines of a block: continuations joined, comments dropped, `$ ` prompts removed. */
function shellLines(block: Block): { n: number; text: string }[] {
  const out: { n: number; text: string }[] = [];
  let pending: { n: number; text: string } | undefined;
  for (const { n, text } of block.lines) {
    const line = text.replace(/^\s*\$\s+/, '').replace(/(^|\s)#.*$/, '');
    const joined = pending ? { n: pending.n, text: `${pending.text} ${line}` } : { n, text: line };
    if (/\\\s*$/.test(joined.text)) pending = { n: joined.n, text: joined.text.replace(/\\\s*$/, '') };
    else {
      pending = undefined;
      out.push(joined);
    }
  }
  if (pending) out.push(pending);
  return out;
}

/**
 * The gradfleet arguments of one shell command, or undefined when it is not a gradfleet command:
 * `[sudo] [npx] gradfleet ARGS`, `node dist/cli/main.js ARGS` and `npm run bench [-- ARGS]`.
 */
function gradfleetArgs(segment: string): string[] | undefined {
  const words: string[] = segment.match(/"[^"]*"|'[^']*'|\S+/g) ?? [];
  let i = 0;
  while (
    i < words.length &&
    (/^[A-Za-z_][A-Za-z0-9_]*=/.test(words[i]) || /^(sudo|time|env|exec)$/.test(words[i]))
  ) {
    i++;
  }
  if (words[i] === 'npx') i++;
  if (words[i] === 'gradfleet') return words.slice(i + 1);
  if (words[i] === 'node' && words[i + 1]?.endsWith('cli/main.js')) return words.slice(i + 2);
  if (words[i] === 'npm' && words[i + 1] === 'run' && words[i + 2] === 'bench') {
    const dashes = words.indexOf('--', i + 3);
    return ['bench', ...(dashes < 0 ? [] : words.slice(dashes + 1))];
  }
  return undefined;
}

const takesValue = (option: Option) => option.required || option.optional;

/** What is wrong with `gradfleet ARGS` for `program`, or undefined: the subcommand and every flag must exist. */
export function commandProblem(program: Command, args: string[]): string | undefined {
  let cmd = program;
  let i = 0;
  while (i < args.length && !args[i].startsWith('-') && cmd.commands.length > 0) {
    if (args[i] === 'help') return undefined;
    const sub = cmd.commands.find((c) => c.name() === args[i] || c.aliases().includes(args[i]));
    if (!sub) {
      const known = cmd.commands.map((c) => c.name()).join(', ');
      return `no subcommand '${args[i]}' in '${fullName(cmd)}' (it has: ${known})`;
    }
    cmd = sub;
    i++;
  }
  for (; i < args.length; i++) {
    const word = args[i];
    if (word === '…' || word === '...') continue;
    if (!word.startsWith('-') || word === '-' || word === '--') {
      if (cmd.registeredArguments.length > 0) continue;
      return `'${fullName(cmd)}' takes no argument '${word}'`;
    }
    const name = word.split('=')[0];
    if (name === '--help' || name === '-h') continue;
    if (cmd === program && (name === '--version' || name === '-V')) continue;
    const option = cmd.options.find((o) => o.long === name || o.short === name);
    if (!option) return `'${fullName(cmd)}' has no option ${name}`;
    if (!takesValue(option) || word.includes('=')) continue;
    if (option.variadic) {
      while (i + 1 < args.length && !args[i + 1].startsWith('-')) i++;
    } else if (option.required) i++;
    else if (i + 1 < args.length && !args[i + 1].startsWith('-')) i++;
  }
  return undefined;
}

function fullName(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/** Checks every gradfleet command line in the fenced shell blocks of `files`. */
export function checkCommands(root: string, files: string[], program: Command, report: CheckReport): void {
  for (const file of files) {
    for (const block of split(readFileSync(file, 'utf8')).blocks) {
      if (!SHELL_LANGS.has(block.lang)) continue;
      for (const { n, text } of shellLines(block)) {
        for (const segment of text.split(/&&|\|\||;|\|/)) {
          // Redirections (`> out.json`, `2>&1`) are the shell's, not the command's.
          const args = gradfleetArgs(segment.replace(/\s\d?>>?&?\s*\S+/g, '').trim());
          if (!args) continue;
          report.commands++;
          const problem = commandProblem(program, args);
          if (problem) {
            report.problems.push({
              where: `${relative(root, file)}:${n}`,
              what: `${problem}: ${segment.trim()}`,
            });
          }
        }
      }
    }
  }
}
