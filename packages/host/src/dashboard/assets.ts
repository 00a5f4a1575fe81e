// The dashboard's static files, read once at start-up and served from memory:
// the page, its script and style, and uPlot from node_modules (served locally,
// since the machines the host runs on have no internet).
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** One file ready to serve. */
export interface Asset {
  body: Buffer;
  contentType: string;
  /** A strong validator, so a reload costs a 304 instead of the file. */
  etag: string;
}

const PUBLIC_DIR = fileURLToPath(new URL('./public/', import.meta.url));

/** URL path → file, for the page's own files and uPlot's two. */
function assetFiles(): Array<[urlPath: string, file: string, contentType: string]> {
  const uplotDist = join(dirname(createRequire(import.meta.url).resolve('uplot/package.json')), 'dist');
  return [
    ['/', join(PUBLIC_DIR, 'index.html'), 'text/html; charset=utf-8'],
    ['/assets/app.js', join(PUBLIC_DIR, 'app.js'), 'text/javascript; charset=utf-8'],
    ['/assets/app.css', join(PUBLIC_DIR, 'app.css'), 'text/css; charset=utf-8'],
    ['/favicon.svg', join(PUBLIC_DIR, 'favicon.svg'), 'image/svg+xml'],
    ['/assets/uPlot.iife.min.js', join(uplotDist, 'uPlot.iife.min.js'), 'text/javascript; charset=utf-8'],
    ['/assets/uPlot.min.css', join(uplotDist, 'uPlot.min.css'), 'text/css; charset=utf-8'],
  ];
}

/** Reads every asset; throws (naming the file) if one is missing, so a broken install fails at start-up, not on first view. */
export function loadAssets(): Map<string, Asset> {
  const assets = new Map<string, Asset>();
  for (const [urlPath, file, contentType] of assetFiles()) {
    let body: Buffer;
    try {
      body = readFileSync(file);
    } catch (err) {
      throw new Error(`dashboard asset missing: ${file}`, { cause: err });
    }
    const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
    assets.set(urlPath, { body, contentType, etag });
  }
  return assets;
}
