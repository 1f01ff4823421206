import type { ViewDef } from "../registry";
import "./broadcastState";
import "./renderers";
import { BroadcastView } from "./BroadcastView";

export const broadcastView: ViewDef = { id: "broadcast", title: "view.broadcast", component: BroadcastView };
