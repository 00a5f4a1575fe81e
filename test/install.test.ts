// The packages as a user gets them (issue 15): `npm pack` every package,
// install the tarballs into an empty project, and from there run the three
// commands with plain node — balloonctl --version, a balloon-host on port 0,
// a balloon-agent — and set a balloon that the kernel sees pinned. Also: what
// each tarball holds, that every import is a declared dependency, and that a
// strict TypeScript consumer type-checks against the shipped declarations.
//
// Everything here runs the built dist/ (the build runs first; it is
// incremental, so after `npm run build` it costs a few seconds), never src/:
// the children get no NODE_OPTIONS, so no @memballoon/source condition and no
// tsx, which the installed copy does not even contain.
//
// Third-party install scripts are skipped (--ignore-scripts) and
// better-sqlite3's compiled addon is copied from this checkout's copy of the
// same pinned version: without GitHub (where its prebuilt binaries live) its
// install compiles SQLite, which takes minutes on a busy two-core machine and
// tests nothing of ours. koffi ships its binaries inside its npm package.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from './support/wait.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** Every package a user can install: the workspaces that are not private. */
const PACKAGES = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { workspaces: string[] }).workspaces
  .map((dir) => JSON.parse(readFileSync(join(ROOT, dir, 'package.json'), 'utf8')) as { name: string; private?: boolean })
  .filter((m) => !m.private)
  .map((m) => m.name);

/** The environment of every child: this one minus what would make it run src/ or change npm's behaviour. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k === 'NODE_OPTIONS' || k.startsWith('MEMBALLOON_')) continue;
    // npm run test exports its own settings (npm_config_*, npm_lifecycle_*); keep only where packages come from.
    if (k.toLowerCase().startsWith('npm_') && !/^npm_config_(registry|cache|userconfig|globalconfig|(https?_)?proxy|noproxy|strict_ssl|cafile)$/i.test(k))
      continue;
    env[k] = v;
  }
  // The node that runs this test runs the installed bins too (their shebang is `env node`).
  env.PATH = [dirname(process.execPath), env.PATH ?? ''].join(delimiter);
  return { ...env, ...extra };
}

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], cwd: string, timeoutMs = 300_000): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, env: cleanEnv(), timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

async function mustRun(cmd: string, args: string[], cwd: string): Promise<string> {
  const r = await run(cmd, args, cwd);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

/** Every file under `dir`, skipping nested node_modules. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (name === 'node_modules') return [];
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });
}

let work: string;
let app: string;
const tarballs = new Map<string, string>();
const children: ChildProcess[] = [];
const bin = (name: string) => join(app, 'node_modules', '.bin', name);

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'memballoon-install-'));
  await mustRun('npm', ['run', 'build'], ROOT);
  const packDir = join(work, 'tarballs');
  mkdirSync(packDir);
  const packed = JSON.parse(await mustRun('npm', ['pack', '--json', '--pack-destination', packDir, ...PACKAGES.flatMap((p) => ['-w', p])], ROOT)) as Array<{
    name: string;
    filename: string;
  }>;
  for (const p of packed) tarballs.set(p.name, join(packDir, p.filename));
  expect([...tarballs.keys()].sort()).toEqual([...PACKAGES].sort());

  app = join(work, 'app');
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'memballoon-install-check', private: true, type: 'module' }));
  await mustRun('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', ...tarballs.values()], app);
  const addon = 'node_modules/better-sqlite3/build/Release/better_sqlite3.node';
  const version = (dir: string) => (JSON.parse(readFileSync(join(dir, 'node_modules/better-sqlite3/package.json'), 'utf8')) as { version: string }).version;
  expect(version(app)).toBe(version(ROOT));
  mkdirSync(dirname(join(app, addon)), { recursive: true });
  copyFileSync(join(ROOT, addon), join(app, addon));
}, 600_000);

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await Promise.all(children.map((c) => (c.exitCode === null && c.signalCode === null ? new Promise((r) => c.once('exit', r)) : undefined)));
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('the tarballs', () => {
  it('hold built JS, declarations, README and runtime assets, and no test, bench, fixture or TypeScript source', async () => {
    for (const [name, file] of tarballs) {
      const list = (await mustRun('tar', ['-tzf', file], work))
        .trim()
        .split('\n')
        .map((l) => l.replace(/^package\//, ''));
      expect(list, name).toContain('package.json');
      expect(list, name).toContain('README.md');
      const offending = list.filter(
        (f) => /(^|\/)(test|tests|bench|test-support|src)\/|\.test\.|\.bench\.|fixture|tsbuildinfo/.test(f) || (f.endsWith('.ts') && !f.endsWith('.d.ts')),
      );
      expect(offending, name).toEqual([]);
      if (name === 'memballoon') continue;
      expect(list, name).toEqual(expect.arrayContaining(['dist/index.js', 'dist/index.d.ts', 'dist/index.js.map']));
    }
    const list = async (name: string) => (await mustRun('tar', ['-tzf', tarballs.get(name)!], work)).split('\n');
    expect(await list('@memballoon/protocol')).toEqual(
      expect.arrayContaining(['package/proto/memballoon/v1/memballoon.proto', 'package/dist/generated/memballoon.js']),
    );
    expect(await list('@memballoon/guest-agent')).toEqual(
      expect.arrayContaining(['package/dist/balloon/pages.mjs', 'package/dist/native/libc-binding.mjs', 'package/bin/balloon-agent.mjs']),
    );
    expect(await list('@memballoon/host')).toEqual(
      expect.arrayContaining(['package/dist/dashboard/public/index.html', 'package/dist/dashboard/public/app.js', 'package/bin/balloonctl.mjs']),
    );
  });

  it('declare what they import, by version, and no TypeScript loader at run time', () => {
    const manifest = (name: string) => JSON.parse(readFileSync(join(app, 'node_modules', name, 'package.json'), 'utf8')) as Record<string, any>;
    for (const name of PACKAGES) {
      const m = manifest(name);
      expect(m, name).toMatchObject({ license: 'MIT', engines: { node: expect.stringMatching(/^>=20/) }, repository: { type: 'git' } });
      expect(m.private, name).toBeUndefined();
      expect(Object.keys(m.dependencies ?? {}), name).not.toContain('tsx');
    }
    expect(manifest('@memballoon/host').dependencies['@memballoon/protocol']).toBe(manifest('@memballoon/protocol').version);
    expect(manifest('@memballoon/guest-agent').dependencies['@memballoon/protocol']).toBe(manifest('@memballoon/protocol').version);
    expect(manifest('@memballoon/host').exports['.']).toMatchObject({ types: './dist/index.d.ts', import: './dist/index.js' });
    expect(existsSync(join(app, 'node_modules/tsx'))).toBe(false);
  });

  it('import nothing they do not declare (scanned, since hoisting in an install would hide it)', () => {
    for (const name of PACKAGES) {
      const dir = join(app, 'node_modules', name);
      const declared = new Set(
        Object.keys((JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> }).dependencies ?? {}),
      );
      const used = new Set<string>();
      for (const file of filesUnder(dir).filter((f) => /\.m?js$/.test(f))) {
        const text = readFileSync(file, 'utf8');
        // import … from 'x', import 'x', import('x'), require('x'), createRequire(…)('x'), require.resolve('x/…')
        for (const m of text.matchAll(/(?:\bfrom\s*|\bimport\s*\(?\s*|\brequire\s*\(\s*|\)\s*\(\s*|\.resolve\s*\(\s*)['"]([^'"./#][^'"]*)['"]/g)) {
          const spec = m[1]!;
          if (spec.startsWith('node:') || builtinModules.includes(spec)) continue;
          used.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!);
        }
      }
      // The bins import tsx only under the @memballoon/source condition, i.e. in a checkout.
      expect(
        [...used].filter((u) => !declared.has(u) && u !== 'tsx'),
        `${name} imports undeclared packages`,
      ).toEqual([]);
      expect(used.size, name).toBeGreaterThan(0);
    }
  });
});

describe('the installed libraries', () => {
  it('type-check in a strict TypeScript consumer that checks their declarations too (skipLibCheck off)', async () => {
    const libraries = PACKAGES.filter((name) => name.startsWith('@memballoon/'));
    writeFileSync(
      join(app, 'consumer.ts'),
      libraries.map((name, i) => `import * as lib${i} from '${name}';\nexport const n${i}: number = Object.keys(lib${i}).length;\n`).join(''),
    );
    writeFileSync(
      join(app, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          target: 'ES2022',
          strict: true,
          noEmit: true,
          skipLibCheck: false,
          typeRoots: [join(ROOT, 'node_modules/@types')],
          types: ['node'],
        },
        files: ['consumer.ts'],
      }),
    );
    // This checkout's compiler; @types/node from here too (a consumer brings its own).
    const r = await run(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], app);
    expect(r.stdout + r.stderr).toBe('');
    expect(r.code).toBe(0);
  }, 300_000);
});

describe('the installed commands', () => {
  it('balloonctl --version, balloon-host --version and balloon-agent --version print the version', async () => {
    const version = (JSON.parse(readFileSync(join(app, 'node_modules/memballoon/package.json'), 'utf8')) as { version: string }).version;
    for (const name of ['balloonctl', 'balloon-host', 'balloon-agent']) {
      const r = await run(bin(name), ['--version'], app);
      expect(r, name).toEqual({ code: 0, stdout: `${version}\n`, stderr: '' });
    }
  });

  it('a host and an agent from the installed copy: a balloon set with balloonctl settles, pinned in the agent', async () => {
    const dataDir = join(work, 'data');
    const host = spawn(bin('balloon-host'), ['--listen', '127.0.0.1:0', '--data-dir', dataDir, '--pool-mib', '1024', '--log-level', 'info'], {
      cwd: app,
      env: cleanEnv({ MEMBALLOON_LOG_PRETTY: '0' }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(host);
    let hostOut = '';
    host.stdout!.on('data', (d: Buffer) => (hostOut += d.toString('utf8')));
    host.stderr!.on('data', (d: Buffer) => (hostOut += d.toString('utf8')));
    const url = await waitFor(
      () => {
        if (host.exitCode !== null) throw new Error(`balloon-host exited with ${host.exitCode}: ${hostOut}`);
        return /"url":"(http:\/\/[^"]+)"[^\n]*"msg":"balloon-host listening"/.exec(hostOut)?.[1];
      },
      { what: 'the installed balloon-host to listen', timeoutMs: 30_000 },
    );

    // The dashboard's files came along in dist/.
    const page = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      get(`${url}/`, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString('utf8')));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      }).on('error', reject);
    });
    expect(page.status).toBe(200);
    expect(page.body).toMatch(/<html/i);

    const ctl = async (...args: string[]) =>
      JSON.parse(await mustRun(bin('balloonctl'), ['--host', url, '--data-dir', dataDir, '--json', ...args], app)) as Record<string, any>;
    const created = await ctl('createvm', '--name', 'installed', '--memory', '256');
    expect(created.token).toEqual(expect.any(String));

    const agent = spawn(
      bin('balloon-agent'),
      ['--host', url, '--name', 'installed', '--token', created.token, '--memory-mib', '256', '--domain', 'process', '--log-level', 'warn'],
      { cwd: app, env: cleanEnv(), stdio: ['ignore', 'ignore', 'pipe'] },
    );
    children.push(agent);
    let agentErr = '';
    agent.stderr!.on('data', (d: Buffer) => (agentErr += d.toString('utf8')));
    await waitFor(
      async () => {
        if (agent.exitCode !== null) throw new Error(`balloon-agent exited with ${agent.exitCode}: ${agentErr}`);
        return (await ctl('showvminfo', 'installed')).state === 'running';
      },
      { what: 'the installed agent to connect', timeoutMs: 30_000, intervalMs: 200 },
    );

    const targetMib = 32;
    await ctl('controlvm', 'installed', 'guestmemoryballoon', String(targetMib), '--wait', '--timeout', '60');
    const vm = await ctl('showvminfo', 'installed');
    expect(vm.balloon).toMatchObject({ targetMib, actualMib: targetMib });
    expect(vm.pid).toBe(agent.pid);
    // Root (CI) pins through koffi: the kernel's VmLck of the agent covers the balloon.
    if (process.getuid?.() === 0) {
      expect(vm.balloon.lockedMib).toBe(targetMib);
      const vmLckKib = Number(/^VmLck:\s+(\d+) kB/m.exec(readFileSync(`/proc/${agent.pid}/status`, 'utf8'))?.[1]);
      expect(vmLckKib).toBeGreaterThanOrEqual(targetMib * 1024);
    }

    // SIGTERM: the agent deflates, says goodbye and exits 0; then the host.
    const agentExit = new Promise<number | null>((resolve) => agent.once('exit', resolve));
    agent.kill('SIGTERM');
    expect(await agentExit).toBe(0);
    const hostExit = new Promise<number | null>((resolve) => host.once('exit', resolve));
    host.kill('SIGTERM');
    expect(await hostExit).toBe(0);
  });
});
