import type { ViewDef } from "../registry";
import "./renderers";
import { TerminalsView } from "./TerminalsView";

export const terminalsView: ViewDef = {
  id: "terminals",
  title: "view.terminals",
  component: TerminalsView,
};
