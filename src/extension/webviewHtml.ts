import * as vscode from 'vscode';

/** Options a Whittle webview is created with: scripts on, resources only from dist/ and media/. */
export function webviewOptions(extensionUri: vscode.Uri): vscode.WebviewOptions {
  return {
    enableScripts: true,
    localResourceRoots: [vscode.Uri.joinPath(extensionUri, 'dist'), vscode.Uri.joinPath(extensionUri, 'media')],
  };
}

/**
 * The one HTML page every Whittle webview uses: strict CSP with a nonce, assets through asWebviewUri, and the
 * extension's l10n bundle in a meta tag for webview/common/l10n.ts.
 */
export function webviewHtml(webview: vscode.Webview, extensionUri: vscode.Uri, opts: { title: string; bundle: string }): string {
  const nonce = makeNonce();
  const script = webview.asWebviewUri(vscode.Uri.joinPath(extensionUri, 'dist', 'webview', `${opts.bundle}.js`));
  const style = webview.asWebviewUri(vscode.Uri.joinPath(extensionUri, 'media', 'webview.css'));
  const csp = [
    "default-src 'none'",
    `img-src ${webview.cspSource} data: blob:`,
    // Lit (vscode-elements) and d3 set styles from script; no inline <style> from outside is accepted.
    `style-src ${webview.cspSource} 'unsafe-inline'`,
    `font-src ${webview.cspSource}`,
    `script-src 'nonce-${nonce}'`,
  ].join('; ');
  return /* html */ `<!DOCTYPE html>
<html lang="${escapeHtml(vscode.env.language)}">
<head>
  <meta charset="UTF-8">
  <meta http-equiv="Content-Security-Policy" content="${csp}">
  <meta name="viewport" content="width=device-width, initial-scale=1.0">
  <link rel="stylesheet" href="${style}">
  <title>${escapeHtml(opts.title)}</title>
  <meta name="whittle-l10n" content="${escapeHtml(JSON.stringify(vscode.l10n.bundle ?? {}))}">
</head>
<body>
  <main id="app" aria-busy="true">${escapeHtml(vscode.l10n.t('Loading…'))}</main>
  <script nonce="${nonce}" src="${script}"></script>
</body>
</html>`;
}

/** A random nonce for a webview's Content-Security-Policy script-src. */
export function makeNonce(): string {
  const chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  let out = '';
  for (let i = 0; i < 32; i++) out += chars[Math.floor(Math.random() * chars.length)];
  return out;
}

/** Text made safe to put in HTML. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
