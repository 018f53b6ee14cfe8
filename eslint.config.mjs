// ESLint (typescript-eslint). The rule that matters most: only src/extension and the integration tests may
// import 'vscode', and webviews import nothing from src but protocol types.
import tseslint from 'typescript-eslint';

const noVscode = {
  name: 'vscode',
  message: "Only src/extension (and the integration tests) may import 'vscode'; keep core, cli, protocol and webviews host-free.",
};

export default tseslint.config(
  { ignores: ['dist/**', 'out/**', 'node_modules/**', 'samples/**', 'test-results/**', '*.vsix'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    files: ['src/core/**', 'src/cli/**', 'src/protocol/**', 'scripts/**', 'bench/**', 'test/unit/**', 'test/e2e/**'],
    rules: { 'no-restricted-imports': ['error', { paths: [noVscode] }] },
  },
  {
    files: ['webview/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [noVscode],
          patterns: [{ group: ['**/src/core/**', '**/src/extension/**', '**/src/cli/**', 'node:*'], message: 'Webviews import only src/protocol (types and the RPC helper).' }],
        },
      ],
    },
  },
);
