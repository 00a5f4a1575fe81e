// npm start: the local demo (host plus agents on loopback). Not built yet.
console.log('memballoon demo: not yet — the host and agents are being built.');
