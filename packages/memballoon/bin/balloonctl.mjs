#!/usr/bin/env node
// `balloonctl` of the memballoon package: the command itself lives in @memballoon/host.
import '@memballoon/host/bin/balloonctl.mjs';
