// What CLIs print for people: plain lines on stdout, problems on stderr.
export const out = (line = ''): void => void process.stdout.write(`${line}\n`);
export const err = (line = ''): void => void process.stderr.write(`${line}\n`);
