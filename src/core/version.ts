declare const WHITTLE_VERSION: string | undefined;

/** The Whittle version, injected by the bundler from package.json. */
export const version: string = typeof WHITTLE_VERSION === 'string' ? WHITTLE_VERSION : '0.0.0-dev';

/** The tool name recorded in provenance and reports. */
export const toolName = 'whittle';
