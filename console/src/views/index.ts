// The views in the navigation's order (Alt+1 is the first). A view is added in its own folder;
// the only line it needs here is its import and its place in VIEWS.
import { broadcastView } from "./broadcast";
import { directoryView } from "./directory";
import { healthView } from "./health";
import { incidentsView } from "./incidents";
import type { ViewDef } from "./registry";
import { smsView } from "./sms";
import { terminalsView } from "./terminals";
import { voiceView } from "./voice";

export const VIEWS: readonly ViewDef[] = [
  incidentsView,
  directoryView,
  voiceView,
  broadcastView,
  smsView,
  terminalsView,
  healthView,
];
