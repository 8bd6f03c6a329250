// The official Durable Streams conformance suite against the rill at
// $RILL_DS_URL (conformance.mjs starts one and sets it).
import { runConformanceTests } from '@durable-streams/server-conformance-tests';

const baseUrl = process.env.RILL_DS_URL;
if (!baseUrl) throw new Error('set RILL_DS_URL to a rill base URL (or run: node conformance.mjs memory)');

runConformanceTests({ baseUrl });
