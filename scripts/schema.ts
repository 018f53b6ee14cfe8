// Writes schemas/whittle-recipe.schema.json from the passes' parameter tables (npm run schema).
// A unit test (test/unit/recipe.test.ts) fails when the committed file differs from recipeSchema().
import * as fs from 'node:fs';
import * as path from 'node:path';
import { recipeSchema } from '../src/core/recipe/schema';

// Bundled to out/scripts/schema.js: the repository root is two folders up.
const out = path.resolve(__dirname, '..', '..', 'schemas', 'whittle-recipe.schema.json');
fs.mkdirSync(path.dirname(out), { recursive: true });
fs.writeFileSync(out, JSON.stringify(recipeSchema(), null, 2) + '\n');
console.log(`wrote ${path.relative(process.cwd(), out)}`);
