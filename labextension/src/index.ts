/**
 * jupyter-volume's JupyterLab extension: a left-sidebar panel for volumes.
 *
 * On load it asks the server extension for its version; without it the panel says
 * how to enable it (never a blank panel).
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { LabIcon, fileIcon } from '@jupyterlab/ui-components';

import { VolumeModel } from './model';
import { IPanelHost, VolumePanel } from './panel';
import { openDiff, openFile } from './viewer';
import { watchWidgetUploads } from './widgetUpload';

export { requestAPI, ApiError } from './handler';
export { VolumeModel } from './model';
export { VolumePanel } from './panel';

const PLUGIN_ID = 'jupyter-volume:plugin';
const PANEL_ID = 'jupyter-volume-sidebar';
const OPEN_COMMAND = 'jupyter-volume:open';

export const volumeIcon = new LabIcon({
  name: 'jupyter-volume:volume',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">' +
    '<g class="jp-icon3" fill="#616161">' +
    '<path d="M12 2C7.6 2 4 3.3 4 5v14c0 1.7 3.6 3 8 3s8-1.3 8-3V5c0-1.7-3.6-3-8-3zm0 2c3.9 0 6 ' +
    '1.1 6 1s-2.1 1-6 1-6-.9-6-1 2.1-1 6-1zm6 15c0 .1-2.1 1-6 1s-6-.9-6-1v-3.2c1.5.8 3.6 1.2 6 ' +
    '1.2s4.5-.4 6-1.2V19zm0-5.5c0 .1-2.1 1-6 1s-6-.9-6-1v-3.2c1.5.8 3.6 1.2 6 1.2s4.5-.4 6-1.2v3.2z"/>' +
    '</g></svg>'
});

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Browse, upload, download and restore jupyter-volume volumes from the sidebar.',
  autoStart: true,
  // rendermime: nbdime's notebook diff renders outputs and markdown with it
  optional: [ILayoutRestorer, ICommandPalette, IRenderMimeRegistry],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null,
    rendermime: IRenderMimeRegistry | null
  ) => {
    const model = new VolumeModel();
    // the tab of each file's newest version (see openFile), by the file
    const versions = new Map<string, import('@lumino/widgets').Widget>();
    const addToMain = (w: import('@lumino/widgets').Widget, replaces?: string) => {
      // the same file (or diff) opened twice: show the open tab again
      const open = Array.from(app.shell.widgets('main')).find(x => x.id === w.id);
      if (open) {
        w.dispose();
        app.shell.activateById(open.id);
        throw new Error('already open');
      }
      if (replaces !== undefined) {
        // another version of the same file: its tab would show what is no longer there
        versions.get(replaces)?.dispose();
        versions.set(replaces, w);
        w.disposed.connect(() => {
          if (versions.get(replaces) === w) {
            versions.delete(replaces);
          }
        });
      }
      app.shell.add(w, 'main');
      app.shell.activateById(w.id);
    };
    const quiet = async (p: Promise<unknown>) => {
      try {
        await p;
      } catch (e) {
        if ((e as Error).message !== 'already open') {
          throw e;
        }
      }
    };
    const host: IPanelHost = {
      // the icons JupyterLab's own file browser shows for each file type
      iconFor: name => {
        const ft = app.docRegistry.getFileTypesForPath(name)[0];
        return (ft?.icon as LabIcon | undefined) ?? fileIcon;
      },
      openFile: entry => quiet(openFile(model, entry, addToMain)),
      openDiff: (path, a, b) => quiet(openDiff(model, path, a, b, addToMain, rendermime))
    };
    const panel = new VolumePanel(model, host);
    // the notebook widget's uploads of any size (see widgetUpload.ts)
    watchWidgetUploads();
    panel.id = PANEL_ID;
    panel.title.icon = volumeIcon;
    panel.title.caption = 'Volumes';
    app.shell.add(panel, 'left', { rank: 450 });
    if (restorer) {
      restorer.add(panel, PANEL_ID);
    }
    app.commands.addCommand(OPEN_COMMAND, {
      label: 'Show Volumes',
      execute: () => app.shell.activateById(PANEL_ID)
    });
    if (palette) {
      palette.addItem({ command: OPEN_COMMAND, category: 'Volumes' });
    }
    void (async () => {
      if ((await model.checkServer()) === 'ok') {
        try {
          await model.refreshVolumes();
        } catch (e) {
          console.error('jupyter-volume: cannot list volumes', e);
        }
      }
    })();
  }
};

export default plugin;
