// Support code shared by the end-to-end tests.
export * from './wait.js';
export * from './proc.js';
export * from './cleanup.js';
export * from './cgroup-v1.js';
