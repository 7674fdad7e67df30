/** Unit tests and end-to-end tests (real sockets, real app, real redis-server when needed). */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.spec.ts', '**/*.e2e.ts'],
  // Transpile only; `npm test` type-checks src and tests first (pretest).
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json', diagnostics: false }] },
  testTimeout: 20000,
  maxWorkers: 2,
};
