// English and Simplified Chinese. Messages are written in English in the code and looked up in the
// Chinese table; a message missing there shows in English (tests/ui checks none is missing).
import zh from './locales/zh.js';

const TABLES = { en: {}, zh };
export const LANGUAGES = [['en', 'English'], ['zh', '简体中文']];

function initial() {
  const saved = localStorage.getItem('sy.lang');
  if (saved && TABLES[saved]) return saved;
  return (navigator.language || 'en').toLowerCase().startsWith('zh') ? 'zh' : 'en';
}

let lang = initial();

export function getLang() { return lang; }
export function locale() { return lang === 'zh' ? 'zh-CN' : 'en-GB'; }

export function setLang(next) {
  if (!TABLES[next]) return;
  lang = next;
  localStorage.setItem('sy.lang', next);
  document.documentElement.lang = next === 'zh' ? 'zh-CN' : 'en';
}

// t('Approve version {version}', {version: 3})
export function t(message, params) {
  let text = TABLES[lang][message] ?? message;
  if (params) text = text.replace(/\{(\w+)\}/g, (m, key) => (key in params ? String(params[key]) : m));
  return text;
}

document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
