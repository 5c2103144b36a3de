/** Chooses how a command shows progress: Ink on a TTY, plain lines when piped, nothing under --json. */
import React from 'react';
import { render, type Instance } from 'ink';

export type OutputMode = 'ink' | 'plain' | 'json';

export function outputMode(json: boolean): OutputMode {
  if (json) return 'json';
  return process.stdout.isTTY && process.env.CI !== 'true' && process.env.TERM !== 'dumb' ? 'ink' : 'plain';
}

/** An Ink view of a mutable state object, repainted at most every `ms` milliseconds. */
export class LiveView<S> {
  private inst: Instance;
  private last = 0;
  private timer: NodeJS.Timeout | null = null;
  constructor(private readonly View: (p: { state: S }) => React.JSX.Element, private readonly state: S, private readonly ms = 50) {
    this.inst = render(React.createElement(View, { state: { ...state } }), { exitOnCtrlC: false, patchConsole: false });
  }
  update(force = false): void {
    const now = Date.now();
    if (force || now - this.last >= this.ms) {
      this.last = now;
      if (this.timer) {
        clearTimeout(this.timer);
        this.timer = null;
      }
      this.inst.rerender(React.createElement(this.View, { state: { ...this.state } }));
    } else if (!this.timer) {
      this.timer = setTimeout(() => this.update(true), this.ms);
    }
  }
  async done(): Promise<void> {
    this.update(true);
    if (this.timer) clearTimeout(this.timer);
    this.inst.unmount();
    await this.inst.waitUntilExit();
  }
}
