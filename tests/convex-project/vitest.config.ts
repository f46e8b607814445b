import { defineConfig } from "vitest/config";

// Only the differential reference (reference.sh) runs under vitest.
export default defineConfig({
  test: {
    include: ["reference/**/*.test.ts"],
    environment: "node",
  },
});
