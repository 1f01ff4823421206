// Text and photos from the field into the incident: shown when the gateway takes them
// (config.json `uploads`), wired in once the upload protocol is in docs/protocol.md.

export class Feedback {
  constructor(app, card) {
    this.app = app;
    card.hidden = !app.config.uploads;
  }
}
