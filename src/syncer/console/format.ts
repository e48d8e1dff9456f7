import { formatDuration } from '../../platform/duration.ts'

/** How the pages write times, ages and rates: the same everywhere, in UTC as the records are kept. */
export const format = {
  when: (value: Date | string | null | undefined): string => {
    if (value === null || value === undefined) return '–'
    return `${(typeof value === 'string' ? new Date(value) : value).toISOString().replace('T', ' ').slice(0, 19)} UTC`
  },
  age: (ms: number | null | undefined): string => (ms === null || ms === undefined ? '–' : formatDuration(Math.max(0, ms))),
  percent: (ratio: number | null): string => (ratio === null ? '–' : `${(ratio * 100).toFixed(ratio > 0 && ratio < 0.01 ? 2 : 0)} %`),
  rate: (perMinute: number): string => `${perMinute < 10 ? perMinute.toFixed(1) : Math.round(perMinute)}/min`
}
