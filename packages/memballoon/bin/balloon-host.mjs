#!/usr/bin/env node
// `balloon-host` of the memballoon package: the command itself lives in @memballoon/host.
import '@memballoon/host/bin/balloon-host.mjs';
