import type { ViewDef } from "../registry";
import "./renderers";
import "./smsState";
import { SmsView } from "./SmsView";

export const smsView: ViewDef = { id: "sms", title: "view.sms", component: SmsView };
