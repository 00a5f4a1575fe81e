#!/usr/bin/env node
// `balloon-agent` of the memballoon package: the command itself lives in @memballoon/guest-agent.
import '@memballoon/guest-agent/bin/balloon-agent.mjs';
