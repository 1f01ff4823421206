import type { ViewDef } from "../registry";
import "./renderers";
import { VoiceView } from "./VoiceView";

export const voiceView: ViewDef = { id: "voice", title: "view.voice", component: VoiceView };
