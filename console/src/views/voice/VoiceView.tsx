// Voice: dial, the calls with their commands and the console's audio, the DTMF pad and
// transfer of the selected call, conferences.
import { t } from "../../i18n";
import { CallTable, DialForm, SelectedCall } from "./CallPanel";
import { ConferencePanel } from "./ConferencePanel";

export function VoiceView() {
  return (
    <section class="view voice" aria-labelledby="voice-title">
      <header class="view-head">
        <h1 id="voice-title">{t("view.voice")}</h1>
        <DialForm />
      </header>
      <div class="voice-grid">
        <section class="panel" aria-labelledby="voice-calls-title">
          <h2 id="voice-calls-title">{t("voice.calls")}</h2>
          <CallTable />
          <SelectedCall />
        </section>
        <section class="panel" aria-labelledby="voice-conf-title">
          <h2 id="voice-conf-title">{t("voice.conferences")}</h2>
          <ConferencePanel />
        </section>
      </div>
    </section>
  );
}
