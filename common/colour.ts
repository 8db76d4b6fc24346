/**
 * Whether to write ANSI colours to a stream: only to a terminal, and never when NO_COLOR is set
 * to anything non-empty (https://no-color.org), so piped output and logs stay plain text.
 */
export function colourEnabled(
  stream: { isTTY?: boolean } = process.stdout,
  env: NodeJS.ProcessEnv = process.env,
): boolean {
  return stream.isTTY === true && !env.NO_COLOR;
}

/** cli-table3's style: its default red headings and grey borders only where colours are wanted. */
export function tableStyle(stream: { isTTY?: boolean } = process.stdout): {
  head: string[];
  border: string[];
} {
  return colourEnabled(stream) ? { head: ['cyan'], border: ['grey'] } : { head: [], border: [] };
}
