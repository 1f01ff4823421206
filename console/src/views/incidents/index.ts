import type { ViewDef } from "../registry";
import { IncidentsView } from "./IncidentsView";

export const incidentsView: ViewDef = { id: "incidents", title: "view.incidents", component: IncidentsView };
