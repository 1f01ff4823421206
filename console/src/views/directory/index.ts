import type { ViewDef } from "../registry";
import { DirectoryView } from "./DirectoryView";

export const directoryView: ViewDef = { id: "directory", title: "view.directory", component: DirectoryView };
