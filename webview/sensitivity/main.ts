import '@vscode-elements/elements/dist/vscode-button/index.js';
import type { FromSensitivityEvent, SensitivityRequests, ShowModelEvent, ToSensitivityEvent } from '../../src/protocol/sensitivity';
import { connect } from '../common/api';
import { formatCount, h } from '../common/dom';

/** The Layer Sensitivity side-bar view: the active model's layers; sweeps arrive with the Analysis issue. */

document.body.classList.add('sidebar');
const app = document.getElementById('app')!;

const rpc = connect<SensitivityRequests, SensitivityRequests, FromSensitivityEvent, ToSensitivityEvent>({}, (event) => {
  switch (event.type) {
    case 'showModel':
      render(event);
      break;
    default: {
      const never: never = event.type;
      void never;
    }
  }
});

function render({ model, selected }: ShowModelEvent): void {
  app.removeAttribute('aria-busy');
  if (!model) {
    app.replaceChildren(h('p', { class: 'muted' }, 'Open a model in the Whittle Model Inspector to see its layers here.'));
    return;
  }
  app.replaceChildren(
    h('div', {}, h('strong', {}, model.name), h('span', { class: 'muted' }, ` · ${formatCount(model.params)} parameters`)),
    h('div', { class: 'toolbar' }, h('vscode-button', { onclick: () => rpc.sendEvent({ type: 'analyze', file: model.file }) }, 'Analyze sensitivity')),
    h(
      'table',
      { id: 'sensitivity-layers' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Layer'), h('th', {}, 'Op'), h('th', { class: 'num' }, 'Params'))),
      h(
        'tbody',
        {},
        ...model.layers.map((l) =>
          h('tr', { class: l.name === selected ? 'selected' : undefined }, h('td', { class: 'mono' }, l.name), h('td', {}, l.op), h('td', { class: 'num' }, formatCount(l.params))),
        ),
      ),
    ),
  );
}
