export { startBroker, type RunningBroker, type BrokerOverrides } from './app.js';
export { loadConfig, parseConfig, type BrokerConfig } from './config/config.js';
export { CountersignError } from './errors.js';
export { systemClock, ManualClock, type Clock } from './clock.js';
