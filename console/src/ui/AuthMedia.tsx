// Photos, voice notes and recordings that need the console's token: fetched with it
// (authFetch), shown from a blob: URL (the page's CSP allows blob: images and media), released
// when the component goes.
import { useEffect, useState } from "preact/hooks";
import { t } from "../i18n";
import { authFetch } from "../state/connection";

function useBlobUrl(path: string): { url: string | null; failed: boolean } {
  const [url, setUrl] = useState<string | null>(null);
  const [failed, setFailed] = useState(false);
  useEffect(() => {
    let made: string | null = null;
    let live = true;
    authFetch(path).then(
      (blob) => {
        if (!live) return;
        made = URL.createObjectURL(blob);
        setUrl(made);
      },
      () => live && setFailed(true),
    );
    return () => {
      live = false;
      if (made) URL.revokeObjectURL(made);
    };
  }, [path]);
  return { url, failed };
}

export function AuthImage({ path, alt }: { path: string; alt: string }) {
  const { url, failed } = useBlobUrl(path);
  if (failed) return <span class="muted">{t("media.unavailable")}</span>;
  return url ? <img class="tl-photo" src={url} alt={alt} data-path={path} /> : <span class="muted">{t("media.loading")}</span>;
}

export function AuthPlayer({ path, kind, label }: { path: string; kind: "audio" | "video"; label: string }) {
  const { url, failed } = useBlobUrl(path);
  if (failed) return <span class="muted">{t("media.unavailable")}</span>;
  if (!url) return <span class="muted">{t("media.loading")}</span>;
  return kind === "audio" ? (
    <audio class="tl-audio" controls preload="metadata" src={url} aria-label={label} data-path={path} />
  ) : (
    <video class="tl-video" controls preload="metadata" src={url} aria-label={label} data-path={path} />
  );
}
