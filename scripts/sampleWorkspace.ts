import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../src/core/atomicWrite';
import { buildSampleModel } from '../src/core/samples/sampleModel';

/** The bundled sample model's file name. */
export const sampleModelName = 'lenet-sample.onnx';

/** Writes the sample workspace: the generated LeNet-style model and a README saying what it is. */
export function makeSampleWorkspace(dir: string): string {
  fs.mkdirSync(dir, { recursive: true });
  const model = path.join(dir, sampleModelName);
  writeFileAtomic(model, buildSampleModel());
  writeFileAtomic(
    path.join(dir, 'README.md'),
    [
      '# Whittle sample workspace',
      '',
      `\`${sampleModelName}\` is a LeNet-style MNIST CNN (1x28x28 -> 10 logits) that Whittle generates with seeded weights.`,
      'Right-click it in the Explorer and pick **Whittle: Inspect Model**, or just open it.',
      '',
    ].join('\n'),
  );
  return model;
}
