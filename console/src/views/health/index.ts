import type { ViewDef } from "../registry";
import { HealthView } from "./HealthView";

export const healthView: ViewDef = { id: "health", title: "view.health", component: HealthView };
