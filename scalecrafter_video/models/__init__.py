"""Models built in code: the tiny random pipelines (tests, smoke runs) and the shipped trained
shapes models (`shapes32`, `shapes32-motion`), with their pipeline class and metrics."""
