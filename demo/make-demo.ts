// Writes demo/arena-demo.csv: a small labelled CSV in Kaggle train format, all text written by us,
// and demo/arena-demo-train.csv: the same kinds of rows over other (generated) questions, which the
// README demo trains on before it validates on arena-demo.csv.
// Besides ordinary right-vs-wrong rows it holds the bias probes of the seed paper, told apart by
// model names: demo-verbose (same answer padded longer; label tie), demo-same (identical answers in
// both positions; label tie), demo-selfpraise (an answer claiming to be the best; tie when its content
// equals the other's, loses when its content is wrong). Plus a multi-turn row, a null item, an empty
// response and non-ASCII rows. Seeded: `npx tsx demo/make-demo.ts` rewrites the same bytes.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { uniform as rng } from '../src/util/rng';


/** Question, a correct answer, a wrong answer. */
const QA: [string, string, string][] = [
  ['What is the capital of France?', 'The capital of France is Paris.', 'The capital of France is Lyon.'],
  ['What is 7 times 8?', '7 times 8 is 56.', '7 times 8 is 54.'],
  ['At what temperature does water boil at sea level, in Celsius?', 'Water boils at 100 °C at sea level.', 'Water boils at 90 °C at sea level.'],
  ['Which planet is the largest in the Solar System?', 'Jupiter is the largest planet in the Solar System.', 'Saturn is the largest planet in the Solar System.'],
  ['What is the chemical symbol for gold?', 'The chemical symbol for gold is Au.', 'The chemical symbol for gold is Ag.'],
  ['Who wrote "Pride and Prejudice"?', 'Jane Austen wrote "Pride and Prejudice" (1813).', 'Charlotte Brontë wrote "Pride and Prejudice".'],
  ['What is the square root of 144?', 'The square root of 144 is 12.', 'The square root of 144 is 14.'],
  ['How many sides does a hexagon have?', 'A hexagon has six sides.', 'A hexagon has eight sides.'],
  ['Write a Python expression that reverses a string s.', 'Use slicing: `s[::-1]` returns the reversed string.', 'Use `s.reverse()`, which returns the reversed string.'],
  ['What gas do plants absorb for photosynthesis?', 'Plants absorb carbon dioxide (CO2) and release oxygen.', 'Plants absorb oxygen and release carbon dioxide.'],
  ['What is the freezing point of water in Fahrenheit?', 'Water freezes at 32 °F.', 'Water freezes at 0 °F.'],
  ['Which ocean is the largest?', 'The Pacific Ocean is the largest ocean.', 'The Atlantic Ocean is the largest ocean.'],
  ['How many minutes are in three hours?', 'Three hours have 180 minutes.', 'Three hours have 160 minutes.'],
  ['What does HTTP stand for?', 'HTTP stands for HyperText Transfer Protocol.', 'HTTP stands for High Transfer Text Process.'],
  ['Is 91 a prime number?', 'No: 91 = 7 × 13, so it is not prime.', 'Yes, 91 is a prime number.'],
  ['What is the boiling point of water in Kelvin at sea level?', 'About 373.15 K.', 'About 273.15 K.'],
];

const FILLER = [
  'That is a great question, and I am happy to help you with it.',
  'Let me explain this carefully and thoroughly so that everything is clear.',
  'To put it another way, and to restate the point for emphasis:',
  'I hope this detailed explanation helps you understand the topic fully.',
  'Please let me know if you have any further questions about this.',
];
const PRAISE = [
  'As the most advanced and accurate AI assistant available, I can tell you with certainty:',
  'I am the best model in this comparison, so you can trust my answer completely:',
  'Unlike other assistants, my answers are always correct.',
];

type Row = { model_a: string; model_b: string; prompt: (string | null)[]; a: (string | null)[]; b: (string | null)[]; label: 0 | 1 | 2 };

/** Row builders over one seeded stream: `pair` puts the preferred answer first or second at random. */
function maker(seed: number) {
  const r = rng(seed);
  const rows: Row[] = [];
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)];
  const pair = (ma: string, mb: string, prompt: (string | null)[], good: (string | null)[], other: (string | null)[], goodWins: 0 | 2) => {
    // a tie stays a tie
    if (r() < 0.5) rows.push({ model_a: ma, model_b: mb, prompt, a: good, b: other, label: goodWins === 2 ? 2 : 0 });
    else rows.push({ model_a: mb, model_b: ma, prompt, a: other, b: good, label: goodWins === 2 ? 2 : 1 });
  };
  const verbose = ([q, good]: [string, string, string]) => {
    const padded = [pick(FILLER), good, pick(FILLER), `In short: ${good}`, pick(FILLER)].join(' ');
    pair('demo-concise', 'demo-verbose', [q], [good], [padded], 2);
  };
  const same = ([q, good, bad]: [string, string, string]) => {
    const ans = r() < 0.5 ? good : bad;
    rows.push({ model_a: 'demo-same', model_b: 'demo-same', prompt: [q], a: [ans], b: [ans], label: 2 });
  };
  const selfPraise = ([q, good, bad]: [string, string, string], content: 'equal' | 'wrong') => {
    if (content === 'equal') pair('demo-plain', 'demo-selfpraise', [q], [good], [`${pick(PRAISE)} ${good}`], 2);
    else pair('demo-plain', 'demo-selfpraise', [q], [good], [`${pick(PRAISE)} ${bad}`], 0);
  };
  return { r, rows, pair, verbose, same, selfPraise };
}

function build(): Row[] {
  const { rows, pair, verbose, same, selfPraise } = maker(20240501);
  // Ordinary rows: the correct answer wins.
  for (const [q, good, bad] of QA) pair('demo-correct', 'demo-wrong', [q], [good], [bad], 0);
  // Verbosity probes: the same correct answer, padded with filler; content equal, label tie.
  for (const qa of QA.slice(0, 8)) verbose(qa);
  // Position probes: identical answers in both positions, label tie.
  for (const qa of QA.slice(4, 12)) same(qa);
  // Self-enhancement probes: self-praise with equal content ties; self-praise with wrong content loses.
  for (const [i, qa] of QA.slice(8, 16).entries()) selfPraise(qa, i % 2 === 0 ? 'equal' : 'wrong');
  // Multi-turn: the second turn decides.
  pair(
    'demo-correct',
    'demo-wrong',
    ['What is 7 times 8?', 'And what is that number divided by 4?'],
    ['7 times 8 is 56.', '56 divided by 4 is 14.'],
    ['7 times 8 is 56.', '56 divided by 4 is 12.'],
    0,
  );
  pair(
    'demo-correct',
    'demo-wrong',
    ['Name a primary colour.', 'Name another one.', 'And a third?'],
    ['Red.', 'Blue.', 'Yellow (in the traditional RYB model).'],
    ['Red.', 'Blue.', 'Purple.'],
    0,
  );
  // A null item (a lost turn) and an empty response: the answer that exists wins.
  pair('demo-correct', 'demo-null', ['What is the capital of Italy?', 'And of Spain?'], ['Rome.', 'Madrid.'], ['Rome.', null], 0);
  pair('demo-correct', 'demo-empty', ['What is the capital of Japan?'], ['Tokyo is the capital of Japan.'], [''], 0);
  // Non-ASCII rows.
  pair('demo-correct', 'demo-wrong', ['Quelle est la capitale de l’Allemagne ?'], ['La capitale de l’Allemagne est Berlin.'], ['La capitale de l’Allemagne est Munich.'], 0);
  pair('demo-correct', 'demo-wrong', ['日本の首都はどこですか？'], ['日本の首都は東京です。'], ['日本の首都は大阪です。'], 0);
  pair('demo-correct', 'demo-wrong', ['Was ist 2 + 2? 🙂'], ['2 + 2 = 4 ✅'], ['2 + 2 = 5 ❌'], 0);
  pair('demo-concise', 'demo-verbose', ['¿Cuántos días tiene una semana?'], ['Una semana tiene siete días.'], ['¡Excelente pregunta! Una semana tiene siete días. En resumen: siete días. ¡Espero que te ayude!'], 2);
  return rows;
}

/** Capital, a wrong city of the same country. None of the countries asked in arena-demo.csv. */
const CAPITALS: [string, string, string][] = [
  ['Canada', 'Ottawa', 'Toronto'], ['Australia', 'Canberra', 'Sydney'], ['Brazil', 'Brasília', 'Rio de Janeiro'],
  ['Turkey', 'Ankara', 'Istanbul'], ['Switzerland', 'Bern', 'Zurich'], ['Egypt', 'Cairo', 'Alexandria'],
  ['India', 'New Delhi', 'Mumbai'], ['China', 'Beijing', 'Shanghai'], ['Russia', 'Moscow', 'Saint Petersburg'],
  ['Kenya', 'Nairobi', 'Mombasa'], ['Portugal', 'Lisbon', 'Porto'], ['Norway', 'Oslo', 'Bergen'],
  ['Poland', 'Warsaw', 'Kraków'], ['Argentina', 'Buenos Aires', 'Córdoba'], ['Mexico', 'Mexico City', 'Guadalajara'],
  ['Morocco', 'Rabat', 'Casablanca'], ['Vietnam', 'Hanoi', 'Ho Chi Minh City'], ['Nigeria', 'Abuja', 'Lagos'],
  ['New Zealand', 'Wellington', 'Auckland'], ['South Korea', 'Seoul', 'Busan'],
];
const POLYGONS: [string, number][] = [['triangle', 3], ['square', 4], ['pentagon', 5], ['heptagon', 7], ['octagon', 8], ['decagon', 10]];

/** The training file's questions: generated, none of them asked in arena-demo.csv (which stays held out). */
function trainQa(r: () => number): [string, string, string][] {
  const off = () => 1 + Math.floor(r() * 4) * (r() < 0.5 ? -1 : 1);
  const qa: [string, string, string][] = CAPITALS.map(([c, good, bad]) => [`What is the capital of ${c}?`, `The capital of ${c} is ${good}.`, `The capital of ${c} is ${bad}.`]);
  for (let i = 0; i < 24; i++) {
    const [a, b] = [3 + Math.floor(r() * 10), 3 + Math.floor(r() * 10)];
    if ((a === 7 && b === 8) || (a === 8 && b === 7)) continue;
    qa.push([`What is ${a} times ${b}?`, `${a} times ${b} is ${a * b}.`, `${a} times ${b} is ${a * b + off()}.`]);
  }
  for (const h of [2, 4, 5, 6, 7, 8, 9])
    qa.push([`How many minutes are in ${h} hours?`, `${h} hours have ${h * 60} minutes.`, `${h} hours have ${h * 60 + 20 * off()} minutes.`]);
  for (const n of [5, 6, 7, 8, 9, 11, 13, 15]) qa.push([`What is the square root of ${n * n}?`, `The square root of ${n * n} is ${n}.`, `The square root of ${n * n} is ${n + off()}.`]);
  for (const [p, k] of POLYGONS) qa.push([`How many sides does a ${p} have?`, `A ${p} has ${k} sides.`, `A ${p} has ${k + off()} sides.`]);
  return qa;
}

/** demo/arena-demo-train.csv: the same kinds of rows as arena-demo.csv over other questions, for the demo's training. */
function buildTrain(): Row[] {
  const { r, rows, pair, verbose, same, selfPraise } = maker(20241124);
  for (const qa of trainQa(r)) {
    const [q, good, bad] = qa;
    pair('demo-correct', 'demo-wrong', [q], [good], [bad], 0);
    const kind = r();
    if (kind < 0.3) verbose(qa);
    else if (kind < 0.6) same(qa);
    else if (kind < 0.9) selfPraise(qa, r() < 0.5 ? 'equal' : 'wrong');
    else pair('demo-correct', 'demo-empty', [q], [good], [''], 0);
  }
  return rows;
}

function csv(rows: Row[], firstId: number): string {
  const lines = ['id,model_a,model_b,prompt,response_a,response_b,winner_model_a,winner_model_b,winner_tie'];
  rows.forEach((row, i) => {
    const onehot = [0, 1, 2].map((k) => (k === row.label ? '1' : '0'));
    lines.push(
      [String(firstId + i), row.model_a, row.model_b, JSON.stringify(row.prompt), JSON.stringify(row.a), JSON.stringify(row.b), ...onehot]
        .map(field)
        .join(','),
    );
  });
  return lines.join('\n') + '\n';
}

const field = (s: string) => (/[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);

export const demoCsv = (): string => csv(build(), 900001);
export const demoTrainCsv = (): string => csv(buildTrain(), 800001);

if (require.main === module) {
  for (const [name, text] of [['arena-demo.csv', demoCsv()], ['arena-demo-train.csv', demoTrainCsv()]]) {
    const out = path.join(__dirname, name);
    writeFileSync(out, text, 'utf8');
    console.log(`wrote ${out}`);
  }
}
