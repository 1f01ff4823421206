// The terminals view: replace this placeholder with the view's component (see docs/design.md,
// "The dispatch console: adding a view").
import { placeholder } from "../placeholder/Placeholder";

export const terminalsView = placeholder("terminals", "view.terminals");
