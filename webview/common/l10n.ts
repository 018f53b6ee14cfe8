/**
 * The webview's translations: the host writes its vscode.l10n bundle (undefined in English) into the page's
 * `whittle-l10n` meta tag (src/extension/webviewHtml.ts), and `t` looks messages up in it the way
 * vscode.l10n.t does, `{0}`, `{1}`… replaced by the arguments.
 */
let bundle: Record<string, string> | undefined;

function load(): Record<string, string> {
  if (bundle) return bundle;
  try {
    const content = document.querySelector('meta[name="whittle-l10n"]')?.getAttribute('content');
    bundle = content ? (JSON.parse(content) as Record<string, string>) : {};
  } catch {
    bundle = {};
  }
  return bundle;
}

/** Translates an English message; `{N}` placeholders take the arguments. */
export function t(message: string, ...args: Array<string | number>): string {
  const text = load()[message] ?? message;
  return text.replace(/\{(\d+)\}/g, (m, i: string) => (args[Number(i)] !== undefined ? String(args[Number(i)]) : m));
}

/**
 * Splits a translated message at its `{N}` placeholders and puts the nodes there, for messages with markup in
 * them (a <code> path): `fill(translated, codeNode)`. Placeholders without a node stay as they are.
 */
export function fill(text: string, ...nodes: Node[]): Array<string | Node> {
  return text.split(/(\{\d+\})/).flatMap((part): Array<string | Node> => {
    const m = /^\{(\d+)\}$/.exec(part);
    const node = m ? nodes[Number(m[1])] : undefined;
    return node ? [node] : part ? [part] : [];
  });
}
